"""Builders of the offline benchmark datasets (tuxpaint, fashion-mnist, openclipart, shards)."""
