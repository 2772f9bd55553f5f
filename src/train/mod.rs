pub mod batch;
pub mod export;
pub mod loss;
pub mod optimizer;
pub mod pipeline;
pub mod state;
pub mod trainer;
