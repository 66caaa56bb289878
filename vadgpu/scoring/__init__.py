"""How a frame gets its score: one home for it, called by eval, score, live scoring, the heatmap video,
calibration and the exported model (docs/architecture.md, "scoring/").

    kinds.py        score kinds of an error map (patch-max, psnr, mse, mixed)
    frames.py       FrameScorer: a frame model's clips -> raw frame scores
    tubes.py        TubeScorer: an object model's clips -> one tube per box -> the frame's best tube
    location.py     a tube error's z-score against the training tubes at the same place
    appearance.py   a box's appearance z-score against the training objects (bank, coreset, the term)
    calibration.py  an object model's calibration record in model.pt, and calibrate()
    run.py          score_videos: a scorer over whole videos in test order
    protocol.py     edges, smoothing (one median for offline and live), normalisation
    train_scores.py a frame model's training scores, and the statistics --norm train takes from them
"""
