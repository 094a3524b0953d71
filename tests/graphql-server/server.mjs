// A GraphQL server for ferry's tests, built on graphql-yoga (HTTP and the
// GraphQL-over-HTTP rules), graphql-js (parsing, validation, execution,
// the `errors` list) and graphql-relay (cursor connections). Only the
// schema and its data are written here.
//
// It listens on 127.0.0.1 at a free port, prints `listening PORT` on
// stdout, and exits when its stdin closes, so it never outlives the test
// process that started it.
import { createServer } from "node:http";
import { GraphQLError } from "graphql";
import { connectionFromArray } from "graphql-relay";
import { createSchema, createYoga } from "graphql-yoga";

const typeDefs = /* GraphQL */ `
  type Query {
    repository(owner: String!, name: String!): Repository
    "Like repository, but non-null: an error leaves no data at all."
    requiredRepository(owner: String!, name: String!): Repository!
    "Relay-shaped, but claims more pages without an endCursor."
    brokenIssues(first: Int!, after: String): IssueConnection!
    "Fails with a rate-limit error for the first N calls with this key."
    throttled(key: String!, failures: Int!, first: Int!, after: String): IssueConnection!
  }
  type Repository {
    name: String!
    issues(first: Int!, after: String, since: String): IssueConnection!
    issue(number: Int!): Issue
  }
  type Issue {
    id: ID!
    number: Int!
    title: String
    updatedAt: String!
    comments(first: Int!, after: String): CommentConnection!
  }
  type Comment {
    id: ID!
    body: String!
  }
  type PageInfo {
    hasNextPage: Boolean!
    hasPreviousPage: Boolean!
    startCursor: String
    endCursor: String
  }
  type IssueConnection {
    nodes: [Issue]
    pageInfo: PageInfo!
    totalCount: Int!
  }
  type CommentConnection {
    nodes: [Comment]
    pageInfo: PageInfo!
  }
`;

// Issue n is updated n hours after 2024-01-01 and has n % 3 comments;
// issue 4's title cannot be read, so queries of it get partial data.
const issues = Array.from({ length: 7 }, (_, index) => {
  const number = index + 1;
  const updatedAt = new Date(Date.UTC(2024, 0, 1, number)).toISOString().replace(".000Z", "Z");
  return {
    id: `I_${number}`,
    number,
    title: number === 4 ? null : `Issue ${number}`,
    updatedAt,
    comments: Array.from({ length: number % 3 }, (_, c) => ({
      id: `C_${number}_${c + 1}`,
      body: `Comment ${c + 1} on issue ${number}`,
    })),
  };
});

function connection(items, args) {
  const found = connectionFromArray(items, args);
  return {
    nodes: found.edges.map((edge) => edge.node),
    pageInfo: found.pageInfo,
    totalCount: items.length,
  };
}

const calls = new Map();

const resolvers = {
  Query: {
    repository(_, { owner, name }) {
      if (owner !== "octo") {
        throw new GraphQLError(`Could not resolve to a Repository with the name '${owner}/${name}'.`, {
          extensions: { code: "NOT_FOUND" },
        });
      }
      return { name };
    },
    requiredRepository(parent, args) {
      return resolvers.Query.repository(parent, args);
    },
    brokenIssues(_, args) {
      const found = connection(issues, args);
      found.pageInfo = { ...found.pageInfo, hasNextPage: true, endCursor: null };
      return found;
    },
    throttled(_, { key, failures, ...args }) {
      const count = (calls.get(key) ?? 0) + 1;
      calls.set(key, count);
      if (count <= failures) {
        throw new GraphQLError("API rate limit exceeded", { extensions: { code: "RATE_LIMITED" } });
      }
      return connection(issues, args);
    },
  },
  Repository: {
    issues(_, { since, ...args }) {
      const selected = since ? issues.filter((issue) => issue.updatedAt >= since) : issues;
      return connection(selected, args);
    },
    issue(_, { number }) {
      return issues.find((issue) => issue.number === number) ?? null;
    },
  },
  Issue: {
    title(issue) {
      if (issue.title === null) {
        throw new GraphQLError(`The title of issue ${issue.number} could not be read.`);
      }
      return issue.title;
    },
    comments(issue, args) {
      return connection(issue.comments, args);
    },
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: "/graphql",
  // Resolver errors keep their messages; the tests read them.
  maskedErrors: false,
  logging: false,
});

const server = createServer(yoga);
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
