"""disentanglement_lib's six VAE baselines: beta-VAE, AnnealedVAE, beta-TCVAE,
FactorVAE, DIP-VAE-I and DIP-VAE-II, on its encoder and decoder."""
