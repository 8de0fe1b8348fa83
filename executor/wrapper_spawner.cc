#include "executor/wrapper_spawner.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>

#include "executor/task_protocol.h"
#include "executor/task_wrapper.h"

extern char** environ;

namespace nightshift {
namespace {

WrapperSpawner* g_spawner = nullptr;

std::string ErrnoText(int e) { return std::strerror(e); }

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool RecvAll(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::recv(fd, data, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Sends a fixed-size header with one descriptor attached.
bool SendWithFd(int sock, const void* header, size_t size, int fd) {
  iovec iov{const_cast<void*>(header), size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(size);
}

// Receives a fixed-size header and the descriptor attached to it (-1 when none).
bool RecvWithFd(int sock, void* header, size_t size, int* fd) {
  *fd = -1;
  iovec iov{header, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(fd, CMSG_DATA(c), sizeof(int));
  }
  const bool whole = n > 0 && (static_cast<size_t>(n) == size ||
                               RecvAll(sock, static_cast<char*>(header) + n, size - static_cast<size_t>(n)));
  if (!whole && *fd >= 0) {
    ::close(*fd);
    *fd = -1;
  }
  return whole;
}

struct RequestHeader {
  uint32_t payload_size = 0;
};
struct Reply {
  int32_t pid = 0;  // > 0: started; otherwise -errno
};

// argc, envc, then every string NUL-terminated.
std::string EncodeRequest(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::string out;
  const uint32_t counts[2] = {static_cast<uint32_t>(argv.size()), static_cast<uint32_t>(env.size())};
  out.append(reinterpret_cast<const char*>(counts), sizeof counts);
  for (const auto* list : {&argv, &env}) {
    for (const std::string& s : *list) {
      out += s;
      out += '\0';
    }
  }
  return out;
}

// Pointers into `payload` (which must outlive them), each list ending with nullptr.
bool DecodeRequest(std::string& payload, std::vector<char*>* argv, std::vector<char*>* env) {
  uint32_t counts[2];
  if (payload.size() < sizeof counts) return false;
  std::memcpy(counts, payload.data(), sizeof counts);
  size_t pos = sizeof counts;
  for (int list = 0; list < 2; ++list) {
    std::vector<char*>& out = list == 0 ? *argv : *env;
    for (uint32_t i = 0; i < counts[list]; ++i) {
      size_t end = payload.find('\0', pos);
      if (end == std::string::npos) return false;
      out.push_back(payload.data() + pos);
      pos = end + 1;
    }
    out.push_back(nullptr);
  }
  return true;
}

// The forked child: becomes the wrapper of one try, never returns.
[[noreturn]] void BecomeWrapper(std::vector<char*>& argv, std::vector<char*>& env, int out_fd, int ready_fd) {
  // What posix_spawn gave the exec'ed wrapper: its own session, SIGTERM/SIGINT blocked until
  // it is ready for them, default dispositions, stdin /dev/null, stdout the daemon's pipe.
  for (int sig : {SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGQUIT}) ::signal(sig, SIG_DFL);
  // Ignored (as the wrapper itself does first thing): the "ready" byte below goes to a helper
  // that may have died with the daemon, and that must not kill a wrapper whose pid file exists.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::sigprocmask(SIG_SETMASK, &mask, nullptr);
  ::setsid();
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0 && devnull != 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  ::dup2(out_fd, 1);
  if (out_fd > 2) ::close(out_fd);
  environ = env.data();
  const int argc = static_cast<int>(argv.size()) - 1;
  // The pid file first, then "ready": the daemon learns the pid only once the file exists.
  auto args = ParseTaskWrapperArgs(argc, argv.data());
  auto self = ReadProcStat(::getpid());
  const bool pid_file_written =
      args.ok() && self &&
      // Never over an existing pid file: if a wrapper of this try runs already, its pid file must
      // keep naming it (this one will refuse to run).
      CreateFileAtomically(args->pid_path, FormatPidFile({::getpid(), self->start_time})).ok();
  const char ready = 1;
  (void)!::write(ready_fd, &ready, 1);
  ::close(ready_fd);
  ::_exit(RunTaskWrapper(argc, argv.data(), pid_file_written));
}

// One request: fork the wrapper, wait until its pid file is written, answer with a pidfd.
void Serve(int sock, std::string& payload, int out_fd) {
  Reply reply;
  int pidfd = -1;
  std::vector<char*> argv, env;
  int ready[2] = {-1, -1};
  if (!DecodeRequest(payload, &argv, &env)) {
    reply.pid = -EINVAL;
  } else if (::pipe2(ready, O_CLOEXEC) != 0) {
    reply.pid = -errno;
  } else {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(sock);
      ::close(ready[0]);
      BecomeWrapper(argv, env, out_fd, ready[1]);
    }
    const int fork_errno = errno;
    ::close(ready[1]);
    if (pid < 0) {
      reply.pid = -fork_errno;
    } else {
      pidfd = PidfdOpen(pid);  // our unreaped child: the pid is still its own
      char byte = 0;
      ssize_t n;
      do {
        n = ::read(ready[0], &byte, 1);
      } while (n < 0 && errno == EINTR);
      reply.pid = n == 1 ? pid : -ECHILD;  // it died before it was ready
    }
    ::close(ready[0]);
  }
  ::close(out_fd);
  (void)SendWithFd(sock, &reply, sizeof reply, reply.pid > 0 ? pidfd : -1);
  if (pidfd >= 0) ::close(pidfd);
}

[[noreturn]] void HelperMain(int sock, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(0);
  ::prctl(PR_SET_NAME, "ns-spawner");
  ::signal(SIGPIPE, SIG_IGN);
  // Terminal signals are for the daemon; the helper ends when the daemon closes the socket.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  const int sigfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (::poll(fds, sigfd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    if (sigfd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info;
      while (::read(sigfd, &info, sizeof info) > 0) {
      }
    }
    // Wrappers that ended: reaped here, their results are in their status files.
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    RequestHeader header;
    int out_fd = -1;
    if (!RecvWithFd(sock, &header, sizeof header, &out_fd)) ::_exit(0);  // the daemon is gone
    std::string payload(header.payload_size, '\0');
    if (!RecvAll(sock, payload.data(), payload.size())) ::_exit(0);
    Serve(sock, payload, out_fd);
  }
}

}  // namespace

Result<WrapperSpawner*> WrapperSpawner::Start() {
  if (g_spawner) return g_spawner;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return Status::IOError("socketpair: " + ErrnoText(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    ::close(pair[0]);
    ::close(pair[1]);
    return Status::IOError("fork: " + ErrnoText(e));
  }
  if (pid == 0) {
    ::close(pair[0]);
    // Only the socket (and stdin/out/err) stays open in the helper.
    const int sock = pair[1];
    if (sock > 3) ::close_range(3, static_cast<unsigned>(sock - 1), 0);
    ::close_range(static_cast<unsigned>(sock + 1), ~0U, 0);
    HelperMain(sock, parent);
  }
  ::close(pair[1]);
  g_spawner = new WrapperSpawner(pair[0], pid);  // lives as long as the process
  return g_spawner;
}

WrapperSpawner* WrapperSpawner::Global() { return g_spawner; }

Result<SpawnedWrapper> WrapperSpawner::Spawn(const std::vector<std::string>& argv,
                                             const std::vector<std::string>& env, int stdout_fd) {
  if (socket_ < 0) return Status::IOError("the wrapper spawner is gone");
  const std::string payload = EncodeRequest(argv, env);
  RequestHeader header{static_cast<uint32_t>(payload.size())};
  Reply reply;
  int pidfd = -1;
  if (!SendWithFd(socket_, &header, sizeof header, stdout_fd) || !SendAll(socket_, payload.data(), payload.size()) ||
      !RecvWithFd(socket_, &reply, sizeof reply, &pidfd)) {
    // The helper died (killed by hand, out of memory): from now on wrappers are exec'ed.
    ::close(socket_);
    socket_ = -1;
    return Status::IOError("the wrapper spawner (pid " + std::to_string(helper_pid_) + ") stopped answering");
  }
  if (reply.pid <= 0) {
    if (pidfd >= 0) ::close(pidfd);
    return Status::IOError("cannot start the task wrapper: " + ErrnoText(-reply.pid));
  }
  return SpawnedWrapper{reply.pid, pidfd};
}

}  // namespace nightshift
