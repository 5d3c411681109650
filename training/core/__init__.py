"""The core job: prepare -> build -> fit -> evaluate -> publish, and the loop, state and checkpoints."""
