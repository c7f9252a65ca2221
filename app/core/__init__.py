"""The computation core: pure functions over tensors and PIL images. No HTTP, no templates."""
