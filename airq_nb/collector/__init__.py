"""The air-quality collector: sources (one per API), the hourly job and the readings it keeps."""
