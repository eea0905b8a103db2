"""After the trace: winding numbers, fusion + inpainting, upscale grounding, rendering, OBJ export."""
