"""Student training and evaluation."""
