#include "tongdao/protocol/extension.hpp"
#include "tongdao/protocol/http.hpp"

namespace tongdao::protocol {
namespace {

// A cursor over a header value for the RFC 6455 §9.1 grammar.
struct Cursor {
    std::string_view s;
    std::size_t i = 0;

    void skipOws() noexcept {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    }
    bool eat(char c) noexcept {
        skipOws();
        if (i < s.size() && s[i] == c) {
            ++i;
            return true;
        }
        return false;
    }
    bool atEnd() noexcept {
        skipOws();
        return i == s.size();
    }
    std::string_view token() noexcept {
        skipOws();
        const auto start = i;
        while (i < s.size() && http::isToken(s.substr(i, 1))) ++i;
        return s.substr(start, i - start);
    }
    // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4)
    bool quoted(std::string& out) {
        skipOws();
        if (i >= s.size() || s[i] != '"') return false;
        for (++i; i < s.size(); ++i) {
            if (s[i] == '"') {
                ++i;
                return true;
            }
            if (s[i] == '\\') {
                if (++i == s.size()) return false;
            }
            out += s[i];
        }
        return false;
    }
};

} // namespace

const ExtensionParam* ExtensionItem::find(std::string_view param) const noexcept {
    for (const auto& p : params)
        if (http::iequals(p.name, param)) return &p;
    return nullptr;
}

bool parseExtensions(std::string_view value, std::vector<ExtensionItem>& out) {
    Cursor c{value};
    bool any = false;
    while (!c.atEnd()) {
        if (c.eat(',')) continue; // RFC 9110 §5.6.1: empty list elements are ignored
        ExtensionItem item;
        item.name = std::string(c.token());
        if (item.name.empty()) return false;
        while (c.eat(';')) {
            ExtensionParam p;
            p.name = std::string(c.token());
            if (p.name.empty()) return false;
            if (c.eat('=')) {
                std::string v;
                if (c.quoted(v)) {
                    // RFC 6455 §9.1: an unquoted value must still be a token.
                    if (!http::isToken(v)) return false;
                } else {
                    v = std::string(c.token());
                    if (v.empty()) return false;
                }
                p.value = std::move(v);
            }
            item.params.push_back(std::move(p));
        }
        if (!c.atEnd() && !c.eat(',')) return false;
        out.push_back(std::move(item));
        any = true;
    }
    return any;
}

std::string formatExtension(const ExtensionItem& item) {
    std::string out = item.name;
    for (const auto& p : item.params) {
        out += "; ";
        out += p.name;
        if (p.value) {
            out += '=';
            if (http::isToken(*p.value)) {
                out += *p.value;
            } else {
                out += '"';
                for (char ch : *p.value) {
                    if (ch == '"' || ch == '\\') out += '\\';
                    out += ch;
                }
                out += '"';
            }
        }
    }
    return out;
}

} // namespace tongdao::protocol
