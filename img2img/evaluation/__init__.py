"""Measuring trained models: the metrics (`metrics`), FID and KID on the published network
(`fid`), and evaluating a model on held-out data (`evaluate`)."""
