pub mod batch;
pub mod loss;
pub mod optimizer;
pub mod state;
pub mod trainer;
