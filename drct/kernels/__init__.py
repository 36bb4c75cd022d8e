"""Pure Dr.Jit ray programs: ray set-up, knot-grid marching, padding."""
