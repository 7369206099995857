// An advisory lock on a file, held by the kernel (flock): it is released when the process exits however it exits
// (SIGKILL included), so a killed run never leaves a lock that blocks the next one, and taking over after a kill
// is exactly as safe as taking a free lock. Node has no flock, hence this module.
//
//   lockFile(path, owner)  -> { fd } when the lock was taken (the file then holds `owner`),
//                             { heldBy } when another process holds it (`heldBy`: that process's owner text)
//   unlockFile(fd, path)   removes the file and releases the lock
//
// A release unlinks the file while still holding the lock, so a process that opened the old file and then got its
// lock must notice that the path now names another file (or none) and start again: the inode check below.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "common/napi_args.h"
#include "common/registry.h"

namespace {

#ifndef _WIN32
// the descriptors lockFile handed out: unlockFile closes only these (never, say, stdin given a bad number)
std::set<int>& heldFds() {
  static std::set<int> fds;
  return fds;
}
std::mutex heldMutex;

std::string errnoText(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

std::string readAll(int fd) {
  std::string out;
  char buf[256];
  if (lseek(fd, 0, SEEK_SET) < 0) return out;
  for (int i = 0; i < 16; ++i) {  // an owner text is short; never read an unbounded file
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    clipo::throwError(env, "lockFile(path, owner): expected two strings");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const std::string owner = info[1].As<Napi::String>().Utf8Value();
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) clipo::throwError(env, errnoText("cannot open the lock file", path));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == EWOULDBLOCK || err == EINTR) {
        Napi::Object out = Napi::Object::New(env);
        out.Set("heldBy", readAll(fd));
        close(fd);
        return out;
      }
      close(fd);
      errno = err;
      clipo::throwError(env, errnoText("cannot lock", path));
    }
    struct stat held, named;
    if (fstat(fd, &held) != 0 || stat(path.c_str(), &named) != 0 || held.st_ino != named.st_ino ||
        held.st_dev != named.st_dev) {
      close(fd);  // the file was released (unlinked) between our open and our lock: start over
      continue;
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, owner.data(), owner.size(), 0) != static_cast<ssize_t>(owner.size())) {
      const int err = errno;
      unlink(path.c_str());
      close(fd);
      errno = err;
      clipo::throwError(env, errnoText("cannot write the lock file", path));
    }
    {
      std::lock_guard<std::mutex> g(heldMutex);
      heldFds().insert(fd);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", Napi::Number::New(env, fd));
    return out;
  }
  clipo::throwError(env, "cannot lock " + path + ": it keeps being replaced");
}

Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString())
    clipo::throwError(env, "unlockFile(fd, path): expected a number and a string");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const std::string path = info[1].As<Napi::String>().Utf8Value();
  {
    std::lock_guard<std::mutex> g(heldMutex);
    if (!heldFds().erase(fd)) clipo::throwError(env, "unlockFile: " + std::to_string(fd) + " is not a lock held by this process");
  }
  struct stat held, named;
  // unlink only the file this fd holds (never one that somebody put in its place)
  if (fstat(fd, &held) == 0 && stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev)
    unlink(path.c_str());
  close(fd);
  return env.Undefined();
}
#else
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  clipo::throwError(info.Env(), "lockFile: not supported on this platform");
}
Napi::Value UnlockFile(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }
#endif

void InitFileLock(Napi::Env env, Napi::Object exports) {
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile, "unlockFile"));
}

}  // namespace

CLIPO_REGISTER_MODULE(filelock, InitFileLock);
