"""The reverse process: timestep schedules, diffusers schedulers with variance control, the
state of each image in flight and the batched sampling engine that advances them."""
