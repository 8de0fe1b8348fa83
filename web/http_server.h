// The HTTP listener: Boost.Beast on an io_context of its own (the daemon runs it on its own
// thread, so requests never wait behind a scheduler pass). It parses, enforces limits (body
// size, header size, read timeout, connection cap) and hands each request to a handler, which
// may answer at once or later from another thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "web/http_types.h"

namespace nightshift {

struct HttpServerOptions {
  size_t body_limit = 1 << 20;                        // bigger bodies get 413
  std::chrono::seconds read_timeout{30};              // a slow client is dropped after this
  std::chrono::seconds keep_alive_timeout{60};        // idle keep-alive connections close after this
  size_t max_connections = 512;                       // beyond this, new connections get 503
};

class HttpServer {
 public:
  // Delivers the answer to one request. Call it exactly once, from any thread; the connection
  // waits for it without holding up the server's other connections. If every copy is dropped
  // uncalled, the client gets a 503.
  using Respond = std::function<void(HttpResponse)>;
  using Handler = std::function<void(HttpRequest request, Respond respond)>;
  // The common case: a handler that answers on the server's thread.
  static Handler Immediate(std::function<HttpResponse(const HttpRequest&)> handler);

  HttpServer(boost::asio::io_context& io, Handler handler, HttpServerOptions options = {});
  ~HttpServer();

  // Binds `address` ("HOST:PORT"; port 0 picks a free one) and starts accepting.
  Status Listen(const std::string& address);
  // Stops accepting and closes open connections. Like every other member, call it on the
  // io_context's thread (post it there from elsewhere) once that thread runs.
  void Stop();
  uint16_t port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace nightshift
