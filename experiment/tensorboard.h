// TensorBoard scalar event files, written by hand (no TensorFlow, no protobuf library).
//
// An event file is a sequence of TFRecords:
//   uint64 length (little-endian) | uint32 masked_crc32c(length's 8 bytes) | payload | uint32 masked_crc32c(payload)
// with CRC-32C the Castagnoli CRC (reflected polynomial 0x82F63B78) and
//   masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8   (mod 2^32).
// Each payload is a serialized tensorboard Event (tensorboard/compat/proto/event.proto, summary.proto):
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// The first event carries file_version "brain.Event:2"; then one event per step with all of its scalars.
//
// A run's file is regenerated from all its rows at every write, so that a resumed run simply rewrites
// it: when the file on disk is a prefix of the new contents (one more epoch) only the new records are
// appended, as TensorFlow's own writer does, so that a TensorBoard watching the run sees them (its data
// server keeps an event file open and would never see a file replaced under the same name); otherwise
// (first write, a resume that dropped epochs, a torn append) the file is replaced atomically. A reader
// sees at worst a trailing record not yet complete, which TensorBoard's readers wait on.
// The file's name, events.out.tfevents.<T>.mura-engine, records the run's start time T (whole seconds
// since 1970): a later write into the same folder finds that file and keeps both its name and T, so the
// wall times (T + seconds since the start) do not change across a resume.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace experiment {

// The scalars of one step (an epoch), `seconds` after the run's start.
struct ScalarEvent {
  int64_t step = 0;
  double seconds = 0;
  std::vector<std::pair<std::string, float>> values;  // tag ("loss", "time/epoch_seconds"), value
};

// The masked CRC-32C (data/crc.h) of `size` bytes, as TFRecord stores it.
uint32_t masked_crc32c(const void* bytes, size_t size);

// One TFRecord around `payload`.
std::string tfrecord(const std::string& payload);

// The whole event file: the file_version event at start_time, then one event per ScalarEvent at
// wall_time start_time + seconds.
std::string tensorboard_events(const std::vector<ScalarEvent>& events, double start_time);

// Makes dir/events.out.tfevents.<T>.mura-engine hold tensorboard_events(events, T) (appending or
// replacing, see above) and returns its path. T is taken from an events.out.tfevents.<T>.mura-engine file
// already in `dir` (the earliest, when several), otherwise floor(start_time); `dir` is created when missing.
std::string write_tensorboard_run(const std::string& dir, const std::vector<ScalarEvent>& events, double start_time);

// Removes this writer's event files (events.out.tfevents.<T>.mura-engine) directly in `dir`, not in its
// subfolders, and returns how many: a run folder of the older layout (one event file in tensorboard/
// itself) resumed into the train/ and validation/ runs keeps no stale third run. Nothing else is touched.
int remove_event_files(const std::string& dir);

}  // namespace experiment
