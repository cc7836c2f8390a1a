"""Scorers: independent measuring instruments for every tokenizer and model.

Nothing here is trained by us. Heavy models (Whisper tiny.en, resemblyzer, basic-pitch, MiniLM)
load lazily on first use and are cached per process. Modules, one job each:

- text_norm: text normalisation before WER/CER
- asr: Whisper transcription, WER/CER per clip and aggregate
- speaker: resemblyzer embeddings and cosine similarity
- audio_metrics: log-mel distance, SI-SNR
- music_notes: basic-pitch transcription and note F1
- music_attributes: tempo, key/mode and register read from audio
- captions: BLEU-4, METEOR, ROUGE-L, CIDEr (pycocoevalcap) and exact attribute accuracy
- scene_checker: colour/shape/count/position read back from a scene image
- image_metrics: PSNR, SSIM
- benchmarks: corpus manifests and external benchmarks laid out locally
- systems: the system-under-test protocol and the built-in reference (oracle) systems
- tasks: `anygpt eval TASK`; report: terminal table and JSON
"""
