"""Methods PixelNN is compared with that need their own training (pix2pix); the evaluation runs them."""
