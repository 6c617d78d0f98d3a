"""Camera simulator: synthetic road and drain scenes, faults, served like a real camera."""
