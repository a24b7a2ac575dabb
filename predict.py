"""Part label maps of new photos, from a training run or an export.

    python predict.py --model_dir=runs/coseg --images=photos/ --whole_image \
        --output_dir=parts/
    python predict.py --saved_model=exports/coseg --images='photos/*.jpg' \
        --coco_file=detections.json --min_score=0.5 --output_dir=parts/

Writes OUTPUT_DIR/ID.png (palette PNG, pixel value = class id), ID_overlay.jpg,
legend.json (class names and colours) and summary.json; bad files are named and
skipped. Flags: flags/predict.py; what it does: coseg_tf/predict.py. Exit code 2 for a
refused flag or input.
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.predict()
