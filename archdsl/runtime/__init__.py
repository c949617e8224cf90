"""What generated models use at run time: Keras layers and weight transfer between the frameworks."""
