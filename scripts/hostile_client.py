"""A hostile client with valid credentials, against real `marill party` processes.

It authenticates to the server (127.0.0.1:7102) and dealer (127.0.0.1:7103) as the client,
accepts their connections on 127.0.0.1:7101, then sends the server a frame header claiming
16 GiB. The server must exit at once with one error line, its peak RSS that of its loaded model.
Usage (see docs/security.md, "A hostile client by hand"): python3 hostile_client.py TLS_DIR
"""
import socket, ssl, struct, sys, threading, time
TLS = sys.argv[1]
def server_ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(f"{TLS}/client.crt", f"{TLS}/client.key")
    return c
def client_ctx(peer):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.load_cert_chain(f"{TLS}/client.crt", f"{TLS}/client.key")
    return c
held = []
def accept_loop():
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 7101)); l.listen(8)
    ctx = server_ctx()
    for _ in range(2):
        s, _ = l.accept()
        t = ctx.wrap_socket(s, server_side=True)
        t.sendall(bytes([0xA5]))
        held.append(t)
threading.Thread(target=accept_loop, daemon=True).start()
def dial(port, peer):
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", port)); break
        except OSError: time.sleep(0.1)
    t = client_ctx(peer).wrap_socket(s, server_hostname=peer)
    assert t.recv(1) == bytes([0xA5]), "no ack"
    return t
srv = dial(7102, "server"); dl = dial(7103, "dealer")
time.sleep(2)
print("connected; sending a header claiming 16 GiB", flush=True)
srv.sendall(struct.pack("<QQ", 16 << 30, 0))
t0 = time.time()
try:
    print("server answered:", srv.recv(100), "after %.2f s" % (time.time() - t0))
except Exception as e:
    print("server connection:", e, "after %.2f s" % (time.time() - t0))
time.sleep(1)
