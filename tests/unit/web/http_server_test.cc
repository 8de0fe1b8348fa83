// The Beast server with handlers that answer later from another thread (as the daemon does for
// requests that change state): other connections keep being served meanwhile.
#include "web/http_server.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

namespace nightshift {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// GET `target` on a fresh connection; returns status and body.
std::pair<int, std::string> Get(uint16_t port, const std::string& target) {
  net::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  stream.expires_after(std::chrono::seconds(10));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {res.result_int(), res.body()};
}

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(HttpServer::Handler handler) {
    server_ = std::make_unique<HttpServer>(io_, std::move(handler));
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    net::post(io_, [this] { server_->Stop(); io_.stop(); });
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  net::io_context io_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

TEST_F(HttpServerTest, AnAnswerFromAnotherThreadDoesNotHoldUpOtherConnections) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::thread worker;
  std::mutex mu;
  Start([&](HttpRequest request, HttpServer::Respond respond) {
    if (request.target != "/slow") {
      HttpResponse r;
      r.body = "fast";
      return respond(r);
    }
    std::lock_guard lock(mu);
    worker = std::thread([released, respond] {
      released.wait();
      HttpResponse r;
      r.body = "slow";
      respond(r);
    });
  });
  auto slow = std::async(std::launch::async, [&] { return Get(server_->port(), "/slow"); });
  // The slow request is parked on the worker; the server still answers others.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Get(server_->port(), "/fast"), std::make_pair(200, std::string("fast")));
  EXPECT_EQ(slow.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  release.set_value();
  EXPECT_EQ(slow.get(), std::make_pair(200, std::string("slow")));
  std::lock_guard lock(mu);
  worker.join();
}

TEST_F(HttpServerTest, ARequestDroppedUnansweredGets503) {
  Start([](HttpRequest, HttpServer::Respond) {});  // loses every request
  auto [status, body] = Get(server_->port(), "/x");
  EXPECT_EQ(status, 503);
  EXPECT_NE(body.find("dropped"), std::string::npos) << body;
}

TEST_F(HttpServerTest, AThrowingHandlerGets500AndTheServerGoesOn) {
  Start([](HttpRequest request, HttpServer::Respond respond) {
    if (request.target == "/throw") throw std::runtime_error("boom");
    respond(HttpResponse{});
  });
  EXPECT_EQ(Get(server_->port(), "/throw").first, 500);
  EXPECT_EQ(Get(server_->port(), "/ok").first, 200);
}

}  // namespace
}  // namespace nightshift
