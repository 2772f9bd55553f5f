//! `x·Wᵀ` for a frozen `W`: backward returns only `dx`. candle's matmul backward would also
//! compute (and keep) the gradient of every frozen weight; skipping it makes LoRA steps faster
//! and halves their memory (DESIGN §8).

use candle_core::{CpuStorage, CustomOp1, Device, Error, Layout, Result, Shape, Tensor};

pub struct FrozenMatmul {
    /// `(out, in)`.
    weight: Tensor,
}

impl FrozenMatmul {
    pub fn new(weight: Tensor) -> Self {
        FrozenMatmul { weight }
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| Error::Msg("frozen matmul needs a contiguous input".into()))?;
        let data = storage.as_slice::<f32>()?;
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_y.matmul(&self.weight)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn forward_and_input_gradient_match_a_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 2.0, 3.0], [-1.0, 0.5, 2.0]], &dev)?;
        let x = Var::new(&[[0.5f32, -1.0, 2.0], [1.0, 1.0, 1.0]], &dev)?;
        let frozen = x.apply_op1(FrozenMatmul::new(w.clone()))?;
        let plain = x.matmul(&w.t()?)?;
        assert_eq!(frozen.to_vec2::<f32>()?, plain.to_vec2::<f32>()?);
        let g_frozen = frozen.sqr()?.sum_all()?.backward()?;
        let g_plain = plain.sqr()?.sum_all()?.backward()?;
        assert_eq!(
            g_frozen.get(&x).expect("dx").to_vec2::<f32>()?,
            g_plain.get(&x).expect("dx").to_vec2::<f32>()?
        );
        Ok(())
    }
}
