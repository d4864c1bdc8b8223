"""`paralign bench`: the side-by-side benchmark (``side_by_side``, what `make bench` prints) and its parts that
also run alone as sub-benchmarks (``paralign bench --part loader``, ``--part teacher``)."""
