"""Request pipelines: authenticate → validate → admit → route → attempt → relay → settle."""
