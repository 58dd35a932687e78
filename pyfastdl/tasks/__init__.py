"""The tasks the models are trained on, one module each: the home of everything a model's recipe
shares with the other models of its task.

    classification       ClassificationRecipe, ImageClassificationRecipe; Accuracy; RandomShift,
                         RandomFlipShift                          (LeNet-5, NIN, ResNets, BERT fine-tuning)
    detection            DetectionRecipe; MeanAveragePrecision; flips; box datasets and batches (YOLOs)
    segmentation         SegmentationRecipe; MeanIoU, PixelAccuracy; RandomCrop            (FCNs)
    translation          TranslationRecipe; TokenAccuracy, exact_match, corpus_bleu; batches,
                         decoding through the models' protocol, `pyfastdl translate`
                                                                 (Seq2seq, Bahdanau, ConvS2S, Transformer)
    language_modelling   LanguageModelRecipe; Perplexity                  (char-lm; GPT takes its Perplexity)

Why a package of its own, between the shared loop and the zoo: a task's pieces (its recipe base,
metrics, augmentations) serve several model families and no one of them, and the training loop
(:mod:`pyfastdl.train`) must know no task at all. So the imports go one way only:
``models -> tasks -> train, data, vision, text, nn``. A model's file (:mod:`pyfastdl.models`) holds
its network and a small recipe subclass (the network and its options); the recipes are listed by
name in :mod:`pyfastdl.train.registry`. Importing this package imports no task.
"""
