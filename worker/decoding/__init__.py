"""Speech to text: engine, models, the scheduler and the batched long-form job."""
