"""Any-to-any conversations in AnyInstruct's two stages.

Stage 1 (`script`, `offline_writer`, `openai_writer`) writes multi-turn conversations in which
media appear as descriptions. Stage 2 (`realise`) turns each description into media codes:
images and music from the corpora (by reference, or by the closest caption), speech by our
TTS voices and the speech tokenizer. `chat_sample` renders a conversation with a chat
template and masks the loss to the assistant's turns.
"""
