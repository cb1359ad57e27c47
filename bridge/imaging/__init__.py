"""Rendering and scoring: the diffusers pipeline with A1111's prompt weighting (render), its samplers and
conditioning, and the OpenCLIP scorer (score). Heavy imports (torch, diffusers, open_clip) only inside functions."""
