//! The training schedules the commands share, so that `qsearch finetune`, `qsearch train` and
//! the main flow agree: the learning rate decays (cosine) to a twentieth of its initial value,
//! and fine-tuning is one short pass distilled from the floating-point network.

use super::TrainConfig;

/// Epochs of a quantization-aware fine-tuning run.
pub const FINETUNE_EPOCHS: usize = 1;
/// Initial learning rate of fine-tuning: a quarter of floating-point training's.
pub const FINETUNE_LEARNING_RATE: f64 = 5e-4;
/// Weight of distillation from the floating-point network during fine-tuning.
pub const FINETUNE_DISTILL: f64 = 0.5;
/// The initial learning rate over the final one.
const DECAY: f64 = 20.0;

/// A schedule of `epochs` starting at `learning_rate` and decaying to a twentieth of it, with
/// distillation weight `distill`; the rest as [`TrainConfig::default`].
pub fn schedule(epochs: usize, learning_rate: f64, distill: f64) -> TrainConfig {
    TrainConfig {
        epochs,
        learning_rate,
        final_learning_rate: learning_rate / DECAY,
        distill,
        ..TrainConfig::default()
    }
}

/// The default fine-tuning schedule.
pub fn finetune() -> TrainConfig {
    schedule(FINETUNE_EPOCHS, FINETUNE_LEARNING_RATE, FINETUNE_DISTILL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_training_schedule_is_a_preset_schedule() {
        let d = TrainConfig::default();
        assert_eq!(schedule(d.epochs, d.learning_rate, d.distill), d);
        assert_eq!(finetune().final_learning_rate, 2.5e-5);
    }
}
