"""Data: sources (shapes, torchvision sets, image folders), augmentation and the one data module."""
