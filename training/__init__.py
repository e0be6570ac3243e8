"""Training: data pipeline, shared arguments and callbacks, pretraining, fine-tuning and publishing commands."""
