"""Reading and writing images, structures, doses and tables."""
