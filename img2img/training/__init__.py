"""Training: the settings every model shares and config files, the trainer and its state, and
what it offers every model (schedules, EMA, DiffAugment, loggers, interrupts, several
processes)."""
