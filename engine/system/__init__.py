"""This machine: the processes a run starts (tracked and ended by PID, guarded against a killed
controller) and the memory its clients use (NVML, host RSS)."""
