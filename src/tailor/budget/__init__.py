"""Advertising budget allocation: a media-mix model, an optimizer and a back-test."""
