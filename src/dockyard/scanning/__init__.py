"""What is inside an image: its package inventory (and, later, SBOMs and vulnerability scans)."""
