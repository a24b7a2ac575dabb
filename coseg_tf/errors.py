"""The errors train.py, eval.py and export.py turn into a message and exit code 2.

One class for every refusal, so that one `except` serves the three entry points and
the tools: the message names the flag or file at fault and what is wrong.
"""

import contextlib


class ConfigError(ValueError):
    """A flag or an input that makes the run impossible; raised before any work."""


class BadRecordError(ConfigError):
    """A record of the data that the pipeline cannot use, met while reading it.

    Validation reads the first record of each file only; a later record whose content
    is wrong (a part id outside the vocabulary, maps of another size than the image, an
    image that is not a JPEG or does not decode, a truncated file) stops the run where
    it is decoded. The message names the flag, the file, the record's position and its
    image id (`pipelines.streams.locate_bad_record`). Nothing already written is lost:
    a training run resumes from its last backup once the record is fixed.
    """


@contextlib.contextmanager
def bad_records_named(**patterns):
    """Turns a data error raised inside the block into a `BadRecordError` naming the record.

    Args:
      **patterns: {flag name: file pattern} of what the block reads, e.g.
        train_data=..., val_data=... (None values are skipped).

    Errors that do not come from a record of those files pass through unchanged.
    """
    import tensorflow as tf

    from pipelines import streams

    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
        message = streams.locate_bad_record(e, patterns)
        if message is None:
            raise
        raise BadRecordError(message) from None
