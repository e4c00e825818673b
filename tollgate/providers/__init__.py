"""Provider adapters: pure translators between OpenAI's wire shape and each upstream's, plus one client each."""
