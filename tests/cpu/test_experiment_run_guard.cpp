// experiment/run_guard: the run folder lock refuses a second holder (another process, or a second open of
// the lock file) with a message naming the holder and is free again once the holder is killed with
// SIGKILL; the stale-temporary sweep removes exactly the writers' temporaries; InterruptGuard turns
// SIGINT/SIGTERM into a flag, force-quits on a second signal and restores the previous handlers.
// Children made by fork() report through their exit status and are always killed and reaped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "engine/check.h"
#include "experiment/run_guard.h"
#include "support/temp_path.h"

namespace {

using experiment::InterruptGuard;
using experiment::RunFolderLock;
namespace fs = std::filesystem;

// A forked child running `body`; its return value is the exit status (an exception gives 100). The
// destructor kills and reaps a child still running, so a failing test leaves no process behind.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int code = 100;
      try {
        code = body();
      } catch (...) {
      }
      ::_exit(code);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Waits for the child; its raw wait status.
  int wait() {
    int status = 0;
    EXPECT_EQ(::waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    return status;
  }
  // Waits; the exit status, or -1 when it did not exit normally.
  int exit_code() {
    const int status = wait();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
};

std::string this_host() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

void touch(const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << "x";
}

// --- RunFolderLock -------------------------------------------------------------------------------------

TEST(RunFolderLock, CreatesTheFolderAndRecordsTheHolder) {
  const std::string run = test_support::fresh_temp_path("run_guard", "new") + "/runs/x";
  RunFolderLock lock(run);
  EXPECT_TRUE(lock.held());
  EXPECT_EQ(lock.run_folder(), run);
  std::ifstream file(RunFolderLock::lock_file_path(run));
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("pid " + std::to_string(::getpid()) + "\n"), std::string::npos) << text;
  EXPECT_NE(text.find("host " + this_host() + "\n"), std::string::npos) << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("started \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\n"))) << text;
}

TEST(RunFolderLock, RefusesASecondProcessNamingTheHolder) {
  const std::string run = test_support::fresh_temp_path("run_guard", "busy");
  RunFolderLock lock(run);
  const pid_t holder_pid = ::getpid();
  Child child([&] {
    std::string holder;
    if (RunFolderLock::try_acquire(run, &holder)) return 1;
    const std::string expected = run + " is in use by process " + std::to_string(holder_pid) + " on host " +
                                 this_host() + " (started ";
    if (holder.rfind(expected, 0) != 0) return 2;
    if (holder.find(" UTC); wait for it to finish or choose another --out") == std::string::npos) return 3;
    try {
      RunFolderLock again(run);
      return 4;
    } catch (const engine::Error& e) {
      if (e.what() != holder) return 5;
    }
    return 0;
  });
  // 1: it got the lock; 2, 3: the message does not name this process; 4, 5: the constructor disagrees.
  EXPECT_EQ(child.exit_code(), 0);
  EXPECT_TRUE(lock.held());
}

TEST(RunFolderLock, RefusesASecondOpenInTheSameProcess) {
  // flock belongs to the open file description: a second RunFolderLock here opens its own and is refused.
  const std::string run = test_support::fresh_temp_path("run_guard", "same_process");
  RunFolderLock lock(run);
  std::string holder;
  EXPECT_FALSE(RunFolderLock::try_acquire(run, &holder).has_value());
  const std::regex message(std::regex_replace(run, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                           " is in use by process " + std::to_string(::getpid()) + " on host " + this_host() +
                           R"( \(started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); wait for it to finish or choose another --out)");
  EXPECT_TRUE(std::regex_match(holder, message)) << holder;
  EXPECT_THROW(RunFolderLock again(run), engine::Error);
}

TEST(RunFolderLock, IsFreeAgainAfterTheHolderIsKilled) {
  const std::string run = test_support::fresh_temp_path("run_guard", "killed");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  Child child([&] {
    ::close(ready[0]);
    RunFolderLock lock(run);
    const char byte = 'L';
    if (::write(ready[1], &byte, 1) != 1) return 1;
    for (;;) ::pause();  // holds the lock until killed
  });
  ::close(ready[1]);
  char byte = 0;
  const ssize_t got = ::read(ready[0], &byte, 1);
  ::close(ready[0]);
  ASSERT_EQ(got, 1) << "the child did not take the lock";

  std::string holder;
  EXPECT_FALSE(RunFolderLock::try_acquire(run, &holder).has_value());
  EXPECT_NE(holder.find("in use by process " + std::to_string(child.pid()) + " "), std::string::npos) << holder;

  ASSERT_EQ(::kill(child.pid(), SIGKILL), 0);
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  // The kernel dropped the dead holder's lock: no stale lock to clean, the next run just takes it.
  std::optional<RunFolderLock> next = RunFolderLock::try_acquire(run, &holder);
  ASSERT_TRUE(next.has_value()) << holder;
  EXPECT_TRUE(next->held());
}

TEST(RunFolderLock, ReleasedByDestructorAndReleaseKeptByMove) {
  const std::string run = test_support::fresh_temp_path("run_guard", "release");
  const std::string other = test_support::fresh_temp_path("run_guard", "other");
  {
    RunFolderLock first(run);
    RunFolderLock moved(std::move(first));
    EXPECT_FALSE(first.held());  // NOLINT(bugprone-use-after-move): a moved-from lock holds nothing
    EXPECT_TRUE(moved.held());
    EXPECT_FALSE(RunFolderLock::try_acquire(run).has_value()) << "the move must keep the lock held";

    std::optional<RunFolderLock> assigned = RunFolderLock::try_acquire(other);
    ASSERT_TRUE(assigned.has_value());
    *assigned = std::move(moved);  // releases the other folder's lock, takes over this one
    EXPECT_EQ(assigned->run_folder(), run);
    EXPECT_FALSE(RunFolderLock::try_acquire(run).has_value());
    EXPECT_TRUE(RunFolderLock::try_acquire(other).has_value());
  }
  // Destroyed: free again. The lock file stays (deleting it would race with a new acquirer).
  EXPECT_TRUE(fs::exists(RunFolderLock::lock_file_path(run)));
  std::optional<RunFolderLock> again = RunFolderLock::try_acquire(run);
  ASSERT_TRUE(again.has_value());
  again->release();
  EXPECT_FALSE(again->held());
  EXPECT_TRUE(RunFolderLock::try_acquire(run).has_value());
  EXPECT_TRUE(fs::exists(RunFolderLock::lock_file_path(run)));
}

TEST(RunFolderLock, UnwritableFolderIsAPlainError) {
  const std::string base = test_support::fresh_temp_path("run_guard", "file_not_folder");
  touch(base);  // a file where the run folder should be
  try {
    RunFolderLock lock(base + "/run");
    FAIL() << "a run folder under a file must not lock";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find(base), std::string::npos) << e.what();
  }
}

// --- Stale temporaries ---------------------------------------------------------------------------------

TEST(RunGuard, RemovesExactlyTheStaleTemporaries) {
  const std::string run = test_support::fresh_temp_path("run_guard", "stale");
  const std::vector<std::string> stale = {
      "summary.csv.tmp.12345.3735928559",            // data::write_file_atomic
      "curves/loss.svg.tmp.7.0",                     // ... in a subfolder
      "checkpoints/last.safetensors.tmp-4242",       // engine safetensors writer
      "checkpoints/epoch_003.safetensors.tmp-1",     //
      "checkpoints/best.safetensors.tmp",            // the trainer's hard link
      "a/b/c/deep.json.tmp.1.2",                     // anywhere under the folder
      "notes.tmp.txt.tmp.5.6",                       // a user's name, then a writer's suffix
  };
  const std::vector<std::string> kept = {
      "notes.tmp.txt",        // ".tmp" inside a user's name
      "data.tmp",             //
      "x.tmp.123",            // one number only
      "x.tmp.123.",           //
      "x.tmp.12a.34",         // not digits
      "x.tmp.1.2.txt",        //
      "x.TMP.1.2",            // case matters
      "x.tmp-",               //
      "x.tmp-12x",            //
      "x.tmp-1-2",            //
      ".tmp.1.2",             // no name before the suffix
      ".tmp-1",               //
      ".safetensors.tmp",     //
      "safetensors.tmp",      //
      "best.safetensors.tmp.bak",
      "checkpoints/last.safetensors",
      "checkpoints/best.safetensors",
      "summary.csv",
      "x.tmp_1.2",
  };
  for (const std::string& name : stale) touch(run + "/" + name);
  for (const std::string& name : kept) touch(run + "/" + name);
  // Folders and symbolic links are never removed, even with a temporary's name (nor is a link followed).
  fs::create_directories(run + "/cache.tmp-77/inner");
  touch(run + "/cache.tmp-77/inner/keep.txt");
  const std::string outside = test_support::fresh_temp_path("run_guard", "outside");
  touch(outside + "/target.tmp.1.2");
  fs::create_symlink(outside + "/target.tmp.1.2", run + "/link.tmp.1.2");
  fs::create_directory_symlink(outside, run + "/linked_folder");

  RunFolderLock lock(run);
  std::vector<std::string> expected;
  for (const std::string& name : stale) expected.push_back(run + "/" + name);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(experiment::remove_stale_temporaries(lock), expected);

  for (const std::string& name : stale) EXPECT_FALSE(fs::exists(run + "/" + name)) << name;
  for (const std::string& name : kept) EXPECT_TRUE(fs::exists(run + "/" + name)) << name;
  EXPECT_TRUE(fs::exists(run + "/cache.tmp-77/inner/keep.txt"));
  EXPECT_TRUE(fs::is_symlink(run + "/link.tmp.1.2"));
  EXPECT_TRUE(fs::exists(outside + "/target.tmp.1.2"));
  EXPECT_TRUE(fs::exists(RunFolderLock::lock_file_path(run)));
  // A second sweep finds nothing.
  EXPECT_TRUE(experiment::remove_stale_temporaries(lock).empty());
}

TEST(RunGuard, TemporaryNameForms) {
  EXPECT_TRUE(experiment::is_stale_temporary_name("a.tmp.0.0"));
  EXPECT_TRUE(experiment::is_stale_temporary_name("a.tmp-0"));
  EXPECT_TRUE(experiment::is_stale_temporary_name("a.safetensors.tmp"));
  EXPECT_FALSE(experiment::is_stale_temporary_name("a.tmp"));
  EXPECT_FALSE(experiment::is_stale_temporary_name("a.tmp.0"));
  EXPECT_FALSE(experiment::is_stale_temporary_name("a.tmp-"));
  EXPECT_FALSE(experiment::is_stale_temporary_name("a.tmp.x.0"));
  EXPECT_FALSE(experiment::is_stale_temporary_name(""));
}

// --- InterruptGuard ------------------------------------------------------------------------------------

extern "C" void test_marker_handler(int) {}

struct sigaction current_action(int signal_number) {
  struct sigaction action {};
  EXPECT_EQ(::sigaction(signal_number, nullptr, &action), 0);
  return action;
}

// Installs test_marker_handler for SIGINT and SIGTERM for a test's duration, so that "the previous handler
// is back" is observable, and puts back what was there before.
class MarkedHandlers {
 public:
  MarkedHandlers() {
    struct sigaction marker {};
    marker.sa_handler = test_marker_handler;
    sigemptyset(&marker.sa_mask);
    ::sigaction(SIGINT, &marker, &saved_int_);
    ::sigaction(SIGTERM, &marker, &saved_term_);
  }
  ~MarkedHandlers() {
    ::sigaction(SIGINT, &saved_int_, nullptr);
    ::sigaction(SIGTERM, &saved_term_, nullptr);
  }

 private:
  struct sigaction saved_int_ {};
  struct sigaction saved_term_ {};
};

TEST(InterruptGuard, SigintSetsTheFlagAndHandlersComeBack) {
  MarkedHandlers marked;
  {
    InterruptGuard guard;
    EXPECT_FALSE(guard.requested());
    EXPECT_EQ(guard.signal_number(), 0);
    EXPECT_EQ(guard.exit_status(), 0);
    EXPECT_NE(current_action(SIGINT).sa_handler, test_marker_handler);
    EXPECT_NE(current_action(SIGTERM).sa_handler, test_marker_handler);

    ASSERT_EQ(::raise(SIGINT), 0);  // delivered before raise returns
    EXPECT_TRUE(guard.requested());
    EXPECT_EQ(guard.signal_number(), SIGINT);
    EXPECT_EQ(guard.exit_status(), 130);
  }
  EXPECT_EQ(current_action(SIGINT).sa_handler, test_marker_handler);
  EXPECT_EQ(current_action(SIGTERM).sa_handler, test_marker_handler);
}

TEST(InterruptGuard, SigtermExitsWith143) {
  MarkedHandlers marked;
  {
    InterruptGuard guard;
    ASSERT_EQ(::raise(SIGTERM), 0);
    EXPECT_TRUE(guard.requested());
    EXPECT_EQ(guard.signal_number(), SIGTERM);
    EXPECT_EQ(guard.exit_status(), 143);
  }
  EXPECT_EQ(current_action(SIGTERM).sa_handler, test_marker_handler);
  // A new guard starts with nothing pending.
  InterruptGuard fresh;
  EXPECT_FALSE(fresh.requested());
}

TEST(InterruptGuard, SecondSigintForceQuits) {
  Child child([] {
    InterruptGuard guard;
    ::raise(SIGINT);
    if (!guard.requested()) return 1;
    ::raise(SIGINT);  // the user insists: the default action kills the process here
    return 2;
  });
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status)) << "exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  if (WIFSIGNALED(status)) {
    EXPECT_EQ(WTERMSIG(status), SIGINT);
  }
}

TEST(InterruptGuard, IgnoredSigintStaysIgnored) {
  // A background job started with SIGINT ignored must not begin to react to the terminal's Ctrl-C.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction saved {};
  ASSERT_EQ(::sigaction(SIGINT, &ignore, &saved), 0);
  {
    InterruptGuard guard;
    EXPECT_EQ(current_action(SIGINT).sa_handler, SIG_IGN);
    ::raise(SIGINT);
    EXPECT_FALSE(guard.requested());
  }
  EXPECT_EQ(current_action(SIGINT).sa_handler, SIG_IGN);
  ::sigaction(SIGINT, &saved, nullptr);
}

TEST(InterruptGuard, OneAtATime) {
  MarkedHandlers marked;
  InterruptGuard guard;
  EXPECT_THROW(InterruptGuard second, engine::Error);
  EXPECT_NE(current_action(SIGINT).sa_handler, test_marker_handler) << "the refused guard must not restore";
}

TEST(InterruptGuard, Messages) {
  EXPECT_EQ(experiment::interruption_message(SIGINT, 3, 120, 2),
            "interrupted (SIGINT): stopped at epoch 3 batch 120; checkpoints/last.safetensors (epoch 2) is intact; "
            "resume with --resume");
  EXPECT_EQ(experiment::interruption_message(SIGTERM, 1, 5, 0),
            "interrupted (SIGTERM): stopped at epoch 1 batch 5; no epoch had finished, so there is no checkpoint "
            "to resume from; start the run again");
  EXPECT_EQ(experiment::signal_name(SIGHUP), "signal " + std::to_string(SIGHUP));
}

}  // namespace
