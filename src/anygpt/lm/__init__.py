"""The language-model side: vocabulary expansion, sequence encoding, constrained generation,
checkpoint loading. Nothing here knows about audio or pixels."""
