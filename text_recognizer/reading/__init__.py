"""Reading an image with a trained model: bring it to the training data's look (normalize), run the
network and decode its CTC output (decoding, with the character language model char_lm), for one
image (predict, behind the CLI and the web page) or a test set (evaluation, behind the evaluate stage)."""
