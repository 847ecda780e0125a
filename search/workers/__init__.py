"""Running workers: the trial loop, one worker in this process, stop signals, GPU placement, launchers."""
