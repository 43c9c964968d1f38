"""The reverse process: timestep schedules, diffusers schedulers with variance control, the
batched sampling engine."""
