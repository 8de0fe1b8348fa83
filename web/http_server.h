// The HTTP listener: Boost.Beast on the daemon's io_context. It parses, enforces limits
// (body size, read timeout, connection cap) and hands each request to the ApiRouter.
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
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer(boost::asio::io_context& io, Handler handler, HttpServerOptions options = {});
  ~HttpServer();

  // Binds `address` ("HOST:PORT"; port 0 picks a free one) and starts accepting.
  Status Listen(const std::string& address);
  // Stops accepting and closes open connections.
  void Stop();
  uint16_t port() const;
  size_t open_connections() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace nightshift
