// Run folder guards: the flock(2) lock with its holder record, the stale-temporary sweep and the
// SIGINT/SIGTERM flag (see run_guard.h for what each promises).
#include "experiment/run_guard.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string_view>
#include <thread>

#include "data/io_util.h"
#include "engine/check.h"

namespace experiment {

namespace fs = std::filesystem;

namespace {

// --- The holder record in the lock file ---------------------------------------------------------------

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

std::string utc_now_text() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

// "pid 12345\nhost h\nstarted 2026-12-06 20:31:02 UTC\n"
struct HolderRecord {
  long pid = 0;
  std::string host, started;
  bool complete() const { return pid > 0 && !host.empty() && !started.empty(); }
};

std::string format_record(const HolderRecord& r) {
  return "pid " + std::to_string(r.pid) + "\nhost " + r.host + "\nstarted " + r.started + "\n";
}

HolderRecord parse_record(const std::string& text) {
  HolderRecord r;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) break;  // a line still being written
    const std::string_view line(text.data() + begin, end - begin);
    const size_t space = line.find(' ');
    if (space != std::string_view::npos) {
      const std::string_view key = line.substr(0, space), value = line.substr(space + 1);
      if (key == "pid") r.pid = std::strtol(std::string(value).c_str(), nullptr, 10);
      if (key == "host") r.host = std::string(value);
      if (key == "started") r.started = std::string(value);
    }
    begin = end + 1;
  }
  return r;
}

std::string read_record_text(int fd) {
  char buffer[1024];
  const ssize_t got = ::pread(fd, buffer, sizeof buffer, 0);
  return got > 0 ? std::string(buffer, static_cast<size_t>(got)) : std::string();
}

// The holder writes its record right after locking: a reader may see an empty or partly written file, or for
// a moment the record of a previous (dead) holder on this host. Read again briefly until it is plausible.
std::string in_use_message(const std::string& run_folder, int fd) {
  const std::string this_host = host_name();
  HolderRecord r;
  for (int attempt = 0; attempt < 20; ++attempt) {
    r = parse_record(read_record_text(fd));
    const bool dead_here = r.complete() && r.host == this_host && ::kill(static_cast<pid_t>(r.pid), 0) != 0 &&
                           errno == ESRCH;
    if (r.complete() && !dead_here) break;
    r = HolderRecord{};
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string who = r.complete() ? "process " + std::to_string(r.pid) + " on host " + r.host + " (started " +
                                             r.started + ")"
                                       : "another process (its lock file " + RunFolderLock::lock_file_path(run_folder) +
                                             " does not name it yet)";
  return run_folder + " is in use by " + who + "; wait for it to finish or choose another --out";
}

bool write_all_at_start(int fd, const std::string& text) {
  if (::ftruncate(fd, 0) != 0) return false;
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t put = ::pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    done += static_cast<size_t>(put);
  }
  return true;
}

// --- Stale temporaries ---------------------------------------------------------------------------------

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// --- The signal flag -----------------------------------------------------------------------------------

// The pending signal (0: none). Lock-free, so the handler's compare-exchange is async-signal-safe.
std::atomic<int> pending_signal{0};
std::atomic<bool> guard_alive{false};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");

extern "C" void on_stop_signal(int signal_number) {
  int none = 0;
  if (pending_signal.compare_exchange_strong(none, signal_number)) return;
  // A second signal while one is pending: the user insists. Default action, and deliver it again (it is
  // blocked while this handler runs, so it takes effect as the handler returns).
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(signal_number, &default_action, nullptr);
  ::raise(signal_number);
}

// Installs on_stop_signal for `signal_number`, saving the previous action into `previous`; a signal that was
// ignored stays ignored (a background job started with SIGINT ignored must not start reacting to Ctrl-C).
void install(int signal_number, struct sigaction* previous) {
  ENGINE_CHECK(::sigaction(signal_number, nullptr, previous) == 0) << data::errno_text(errno);
  if (previous->sa_handler == SIG_IGN && !(previous->sa_flags & SA_SIGINFO)) return;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, SIGINT);
  sigaddset(&action.sa_mask, SIGTERM);
  action.sa_flags = SA_RESTART;  // blocking reads and writes elsewhere carry on; the loop checks the flag
  ENGINE_CHECK(::sigaction(signal_number, &action, nullptr) == 0) << data::errno_text(errno);
}

}  // namespace

// --- RunFolderLock -------------------------------------------------------------------------------------

std::string RunFolderLock::lock_file_path(const std::string& run_folder) { return run_folder + "/.lock"; }

bool RunFolderLock::acquire(const std::string& run_folder, RunFolderLock& lock, std::string& holder) {
  data::make_directories(run_folder);
  const std::string path = lock_file_path(run_folder);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    throw engine::UserError("cannot open the lock file " + path + ": " + data::errno_text(errno) + "; check that " +
                        run_folder + " is a writable folder");
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int code = errno;
    if (code == EWOULDBLOCK) holder = in_use_message(run_folder, fd);
    ::close(fd);
    if (code == EWOULDBLOCK) return false;
    throw engine::UserError("cannot lock " + path + ": " + data::errno_text(code) +
                        " (some network file systems do not support locks; choose an --out on a local disk)");
  }
  HolderRecord me;
  me.pid = static_cast<long>(::getpid());
  me.host = host_name();
  me.started = utc_now_text();
  if (!write_all_at_start(fd, format_record(me))) {
    const int code = errno;
    ::close(fd);
    throw engine::UserError("cannot write the lock file " + path + ": " + data::errno_text(code) + " (is the disk full?)");
  }
  lock.release();
  lock.fd_ = fd;
  lock.run_folder_ = run_folder;
  return true;
}

RunFolderLock::RunFolderLock(const std::string& run_folder) {
  std::string holder;
  if (!acquire(run_folder, *this, holder)) throw engine::UserError(holder);
}

std::optional<RunFolderLock> RunFolderLock::try_acquire(const std::string& run_folder, std::string* holder) {
  RunFolderLock lock;
  std::string message;
  if (acquire(run_folder, lock, message)) return std::optional<RunFolderLock>(std::move(lock));
  if (holder) *holder = message;
  return std::nullopt;
}

RunFolderLock::~RunFolderLock() { release(); }

RunFolderLock::RunFolderLock(RunFolderLock&& other) noexcept
    : fd_(other.fd_), run_folder_(std::move(other.run_folder_)) {
  other.fd_ = -1;
}

RunFolderLock& RunFolderLock::operator=(RunFolderLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    run_folder_ = std::move(other.run_folder_);
    other.fd_ = -1;
  }
  return *this;
}

void RunFolderLock::release() noexcept {
  // Closing the only descriptor of the open file description drops the flock lock. The file stays.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// --- Stale temporaries ---------------------------------------------------------------------------------

bool is_stale_temporary_name(const std::string& file_name) {
  const std::string_view name(file_name);
  // <name>.safetensors.tmp
  constexpr std::string_view link_suffix = ".safetensors.tmp";
  if (ends_with(name, link_suffix) && name.size() > link_suffix.size()) return true;
  // <name>.tmp-<digits>
  const size_t dash = name.rfind(".tmp-");
  if (dash != std::string_view::npos && dash > 0 && all_digits(name.substr(dash + 5))) return true;
  // <name>.tmp.<digits>.<digits>
  const size_t last_dot = name.rfind('.');
  if (last_dot == std::string_view::npos || !all_digits(name.substr(last_dot + 1))) return false;
  const std::string_view head = name.substr(0, last_dot);
  const size_t middle_dot = head.rfind('.');
  if (middle_dot == std::string_view::npos || !all_digits(head.substr(middle_dot + 1))) return false;
  const std::string_view base = head.substr(0, middle_dot);
  return ends_with(base, ".tmp") && base.size() > 4;
}

std::vector<std::string> remove_stale_temporaries(const RunFolderLock& lock) {
  ENGINE_CHECK(lock.held()) << "remove_stale_temporaries needs the run folder's lock held";
  std::vector<fs::path> found;
  std::error_code ec;
  // Symbolic links are neither followed into nor removed: the writers only ever make regular files.
  fs::recursive_directory_iterator it(lock.run_folder(), fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code status_ec;
    if (it->symlink_status(status_ec).type() != fs::file_type::regular) continue;
    if (is_stale_temporary_name(it->path().filename().string())) found.push_back(it->path());
  }
  std::vector<std::string> removed;
  for (const fs::path& path : found) {
    std::error_code remove_ec;
    if (fs::remove(path, remove_ec) && !remove_ec) removed.push_back(path.string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

// --- InterruptGuard ------------------------------------------------------------------------------------

InterruptGuard::InterruptGuard() {
  bool alive = false;
  ENGINE_CHECK(guard_alive.compare_exchange_strong(alive, true)) << "only one InterruptGuard may be alive at a time";
  pending_signal.store(0);
  try {
    install(SIGINT, &previous_int_);
  } catch (...) {
    guard_alive.store(false);
    throw;
  }
  try {
    install(SIGTERM, &previous_term_);
  } catch (...) {
    ::sigaction(SIGINT, &previous_int_, nullptr);
    guard_alive.store(false);
    throw;
  }
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGTERM, &previous_term_, nullptr);
  ::sigaction(SIGINT, &previous_int_, nullptr);
  pending_signal.store(0);
  guard_alive.store(false);
}

bool InterruptGuard::requested() const { return pending_signal.load() != 0; }
int InterruptGuard::signal_number() const { return pending_signal.load(); }
int InterruptGuard::exit_status() const { return requested() ? 128 + signal_number() : 0; }

std::string signal_name(int signal_number) {
  if (signal_number == SIGINT) return "SIGINT";
  if (signal_number == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(signal_number);
}

std::string interruption_message(int signal_number, int64_t epoch, int64_t batch, int64_t last_checkpoint_epoch) {
  std::string text = "interrupted (" + signal_name(signal_number) + "): stopped at epoch " + std::to_string(epoch) +
                     " batch " + std::to_string(batch) + "; ";
  if (last_checkpoint_epoch > 0)
    text += "checkpoints/last.safetensors (epoch " + std::to_string(last_checkpoint_epoch) +
            ") is intact; resume with --resume";
  else
    text += "no epoch had finished, so there is no checkpoint to resume from; start the run again";
  return text;
}

}  // namespace experiment
