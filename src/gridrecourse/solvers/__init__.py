"""gridrecourse."""
