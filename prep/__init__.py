"""Offline jobs that make and enrich shards: the synthetic corpus, corpus importers, teacher replies, QA
generation, label prediction. They run models; the runtime packages never import them."""
