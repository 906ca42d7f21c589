"""Corpus readers (folder, UCF-Crime, XD-Violence layouts), the synthetic corpus generator and the
real-footage corpus (:mod:`dualvad.corpus.real_footage`, real clips with injected events).

Pure Python/NumPy; PyAV is imported only when the generator encodes a video.
"""

from dualvad.corpus.layout import CorpusFormatError, VideoRecord
from dualvad.corpus.readers import read_corpus
from dualvad.corpus.synth_plan import SynthSpec
from dualvad.corpus.synthetic import generate_corpus

__all__ = ["CorpusFormatError", "SynthSpec", "VideoRecord", "generate_corpus", "read_corpus"]
