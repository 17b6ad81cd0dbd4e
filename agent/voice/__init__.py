"""Speech input: 16 kHz mono 16-bit PCM in, text out, offline.

`audio` reads and converts WAV files, `endpoint` finds the end of an
utterance by silence, `recognizers` holds the two backends (pocketsphinx, the
embedded English default, and vosk, the production recognizer) behind one
streaming interface, `domain` builds the language model that constrains
recognition to what the agent understands, and `utterance` runs one
utterance from chunks to a transcript with its bounds.
"""

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # bytes: 16-bit little-endian
