// Guards of a training run's folder (--out): one writer at a time, no stale temporaries, a clean stop on
// Ctrl-C.
//
//   experiment::RunFolderLock lock(options.out);              // throws if another process trains there
//   for (const std::string& path : experiment::remove_stale_temporaries(lock)) ...   // print one line
//   experiment::InterruptGuard interrupt;                     // SIGINT/SIGTERM only set a flag now
//   for (each epoch) for (each batch) {
//     if (interrupt.requested()) { print interruption_message(...); return interrupt.exit_status(); }
//     ...
//   }
//
// RunFolderLock: an exclusive advisory lock, flock(2) with LOCK_EX | LOCK_NB, on <run>/.lock (created if
// missing, opened O_CLOEXEC). The holder writes its pid, host name and start time into the file, so a
// second acquirer fails at once with a message naming the holder. Released by the destructor, and by the
// kernel when the holder dies in any way (SIGKILL included): nothing stale is ever left to clean up.
//   - flock locks belong to the open file description: a second RunFolderLock on the same folder in the same
//     process is refused too, while a child made by fork() (without exec) shares the parent's description
//     and keeps the lock held after the parent dies, until the child exits as well.
//   - Network file systems (NFS in particular) may not honour flock, or honour it per host only; keep run
//     folders on a local disk where two machines could train into the same folder.
//   - The lock file is left in place on release (it is harmless, a few bytes): deleting it would race with a
//     new acquirer that has opened the old file and would then lock a file no longer in the folder.
//
// remove_stale_temporaries: while the lock is held no other writer is at work in the folder, so every
// temporary left by an atomic write (write to a temporary beside the destination, then rename) that was
// killed midway is stale. Only regular files whose whole name has one of the writers' forms are removed:
//   <name>.tmp.<digits>.<digits>   (data::write_file_atomic: pid and a random number)
//   <name>.tmp-<digits>            (engine safetensors writer: pid)
//   <name>.safetensors.tmp         (the trainer's hard link to the best checkpoint)
// with <name> not empty; `notes.tmp.txt`, `x.tmp`, `x.tmp.12`, folders and symbolic links all stay.
//
// InterruptGuard: for its lifetime, SIGINT and SIGTERM only record the signal (an async-signal-safe store to
// a lock-free atomic); the previous handlers come back in its destructor. A second SIGINT or SIGTERM while
// one is pending restores the default action and re-raises it, so a double Ctrl-C still kills the process at
// once. One guard at a time per process. The contract for a training loop:
//   - check requested() between batches (never inside one) and stop: do not start the next batch or epoch,
//     and write nothing partial (last.safetensors is only ever written whole, at an epoch's end, so the one
//     on disk is intact);
//   - print interruption_message(...) to stderr, e.g. "interrupted (SIGINT): stopped at epoch 3 batch 120;
//     checkpoints/last.safetensors (epoch 2) is intact; resume with --resume";
//   - exit with exit_status(): 128 + the signal, 130 for SIGINT, 143 for SIGTERM, as a shell reports a
//     process killed by that signal.
#pragma once
#include <signal.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace experiment {

class RunFolderLock {
 public:
  // Creates the run folder if missing and takes its lock. Throws engine::Error when another holder has it
  // ("runs/x is in use by process 12345 on host h (started 2026-12-06 20:31:02 UTC); wait for it to finish
  // or choose another --out") or when the lock file cannot be created or locked.
  explicit RunFolderLock(const std::string& run_folder);
  // The same, but a folder in use gives nullopt (and, with `holder`, the message above) instead of throwing;
  // other failures still throw.
  static std::optional<RunFolderLock> try_acquire(const std::string& run_folder, std::string* holder = nullptr);

  ~RunFolderLock();
  RunFolderLock(RunFolderLock&& other) noexcept;
  RunFolderLock& operator=(RunFolderLock&& other) noexcept;
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

  // Releases now (the destructor then does nothing). The lock file stays.
  void release() noexcept;
  bool held() const { return fd_ >= 0; }
  const std::string& run_folder() const { return run_folder_; }
  // <run>/.lock
  static std::string lock_file_path(const std::string& run_folder);

 private:
  RunFolderLock() = default;
  // Locks into `lock`; false (with the holder's message) when the folder is in use.
  static bool acquire(const std::string& run_folder, RunFolderLock& lock, std::string& holder);

  int fd_ = -1;
  std::string run_folder_;
};

// Removes the stale temporaries (forms above) anywhere under the locked run folder; returns their paths,
// sorted. Files that cannot be removed (permissions) are left in place and not listed.
std::vector<std::string> remove_stale_temporaries(const RunFolderLock& lock);
// True when a file name (no folder) has one of the temporary forms above.
bool is_stale_temporary_name(const std::string& file_name);

class InterruptGuard {
 public:
  // Installs the SIGINT and SIGTERM handlers; throws engine::Error if another InterruptGuard is alive.
  InterruptGuard();
  // Restores the handlers that were installed before.
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  bool requested() const;
  // SIGINT or SIGTERM once requested(), else 0.
  int signal_number() const;
  // 128 + signal_number() once requested() (130 for SIGINT, 143 for SIGTERM), else 0.
  int exit_status() const;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

// "SIGINT", "SIGTERM", else "signal N".
std::string signal_name(int signal_number);
// The line a training loop prints when it stops on a signal; epochs and batches count from 1 as printed.
// last_checkpoint_epoch 0 means no checkpoint was written yet.
//   "interrupted (SIGINT): stopped at epoch 3 batch 120; checkpoints/last.safetensors (epoch 2) is intact;
//    resume with --resume"
std::string interruption_message(int signal_number, int64_t epoch, int64_t batch, int64_t last_checkpoint_epoch);

}  // namespace experiment
