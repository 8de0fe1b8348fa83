#include "app/api_client.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <optional>
#include <string>
#include <thread>

#include "app/remote_commands.h"
#include "web/http_server.h"

namespace nightshift {
namespace {

TEST(ParseServerUrlTest, AcceptsHostPortAndBase) {
  auto url = ParseServerUrl("http://127.0.0.1:8080");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, "8080");
  EXPECT_EQ(url->base_path, "");
  EXPECT_EQ(url->ToString(), "http://127.0.0.1:8080");

  url = ParseServerUrl("localhost:9000/nightshift/");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(url->host, "localhost");
  EXPECT_EQ(url->base_path, "/nightshift");

  url = ParseServerUrl("HTTP://[::1]:8080");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->ToString(), "http://[::1]:8080");

  url = ParseServerUrl("http://example.org");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->port, "80");
}

TEST(ParseServerUrlTest, RejectsWhatItCannotSpeak) {
  for (const char* bad : {"https://host:1", "ftp://host", "http://", "http://:80", "http://host:0",
                          "http://host:99999", "http://host:x", "http://::1:80", "http://user@host:1",
                          "http://host:1/?q", "http://[::1"}) {
    auto url = ParseServerUrl(bad);
    EXPECT_FALSE(url.ok()) << bad;
    if (!url.ok()) {
      EXPECT_NE(url.status().message().find(bad), std::string::npos) << url.status().message();
    }
  }
  EXPECT_NE(ParseServerUrl("https://h:1").status().message().find("https is not supported"), std::string::npos);
}

TEST(ServerUrlFromListenTest, WildcardsMeanLoopback) {
  EXPECT_EQ(ServerUrlFromListen("127.0.0.1:8080"), "http://127.0.0.1:8080");
  EXPECT_EQ(ServerUrlFromListen("0.0.0.0:8080"), "http://127.0.0.1:8080");
  EXPECT_EQ(ServerUrlFromListen(":8080"), "http://127.0.0.1:8080");
  EXPECT_EQ(ServerUrlFromListen("[::]:8080"), "http://[::1]:8080");
  EXPECT_EQ(ServerUrlFromListen("[::1]:8080"), "http://[::1]:8080");
  EXPECT_EQ(ServerUrlFromListen("localhost:1"), "http://localhost:1");
}

TEST(UrlEncodeTest, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(UrlEncode("manual__2026-01-01T00:00:00+00:00"), "manual__2026-01-01T00%3A00%3A00%2B00%3A00");
  EXPECT_EQ(UrlEncode("a b/c?d&e=f~g.h"), "a%20b%2Fc%3Fd%26e%3Df~g.h");
  EXPECT_EQ(UrlEncode("\xc3\xa9"), "%C3%A9");
}

TEST(BuildTriggerConfTest, ParamsOverrideConfAsStrings) {
  auto conf = BuildTriggerConf(R"({"a": 1, "b": {"c": true}})", {"a=x", "d=e=f", "empty="});
  ASSERT_TRUE(conf.ok()) << conf.status().message();
  EXPECT_EQ(*conf, R"({"a":"x","b":{"c":true},"d":"e=f","empty":""})");
  EXPECT_EQ(*BuildTriggerConf("", {}), "{}");
  EXPECT_FALSE(BuildTriggerConf("[1]", {}).ok());
  EXPECT_FALSE(BuildTriggerConf("{", {}).ok());
  EXPECT_FALSE(BuildTriggerConf("", {"novalue"}).ok());
  EXPECT_FALSE(BuildTriggerConf("", {"=v"}).ok());
}

// A real Beast server on 127.0.0.1 that records the last request it got.
class ApiClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.emplace(io_, HttpServer::Immediate([this](const HttpRequest& request) {
      last_ = request;
      HttpResponse response;
      response.status = request.target.starts_with("/missing") ? 404 : 200;
      response.content_type = "text/plain";
      response.body = "echo:" + request.body;
      response.headers.emplace_back("X-Next-Offset", "42");
      return response;
    }));
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    io_.stop();
    thread_.join();
    server_.reset();
  }

  ServerUrl Url(const std::string& base = "") {
    ServerUrl url;
    url.host = "127.0.0.1";
    url.port = std::to_string(server_->port());
    url.base_path = base;
    return url;
  }

  boost::asio::io_context io_;
  std::optional<HttpServer> server_;
  std::thread thread_;
  HttpRequest last_;
};

TEST_F(ApiClientTest, SendsOneRequestAndReadsTheWholeResponse) {
  ApiClient client(Url("/base"));
  auto response = client.Send("POST", "/api/v1/x?y=1", R"({"k":"v"})", "secret");
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, R"(echo:{"k":"v"})");
  EXPECT_EQ(response->Header("x-next-offset"), "42");
  EXPECT_EQ(response->Header("content-type"), "text/plain");
  EXPECT_EQ(response->Header("absent"), "");
  EXPECT_EQ(last_.method, "POST");
  EXPECT_EQ(last_.target, "/base/api/v1/x?y=1");
  EXPECT_EQ(last_.Header("authorization"), "Bearer secret");
  EXPECT_EQ(last_.Header("content-type"), "application/json");
}

TEST_F(ApiClientTest, ErrorStatusesAreResponsesNotFailures) {
  ApiClient client(Url());
  auto response = client.Send("GET", "/missing");
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(last_.Header("authorization"), "");
}

TEST_F(ApiClientTest, RejectsBadInputWithoutSending) {
  ApiClient client(Url());
  EXPECT_FALSE(client.Send("FROB", "/x").ok());
  EXPECT_FALSE(client.Send("GET", "x").ok());
}

TEST(ApiClientErrorTest, ConnectionRefusedIsOneLineWithAHint) {
  // A port that was just free: nobody listens there.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const std::string port = std::to_string(acceptor.local_endpoint().port());
  acceptor.close();
  ServerUrl url;
  url.host = "127.0.0.1";
  url.port = port;
  auto response = ApiClient(url).Send("GET", "/api/v1/health");
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().message(), "cannot reach the daemon at http://127.0.0.1:" + port +
                                             " (connection refused); is \"nightshift serve\" running?");
}

TEST(ApiClientErrorTest, ASilentServerTimesOut) {
  // Accepts (through the backlog) but never answers.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  ServerUrl url;
  url.host = "127.0.0.1";
  url.port = std::to_string(acceptor.local_endpoint().port());
  ApiClientOptions options;
  options.request_timeout = std::chrono::milliseconds(200);
  auto response = ApiClient(url, options).Send("GET", "/api/v1/health");
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().message(), "the daemon at " + url.ToString() + " did not answer within 0.2s");
}

}  // namespace
}  // namespace nightshift
