-- Top products by revenue. Run it with Shoal:
--   shoal exec duckdb --code examples/top_products.sql \
--       -i src=examples/sales.csv,dst=/inputs/sales.csv \
--       -- -init /code/top_products.sql -c "select count(*) AS rows FROM '/inputs/sales.csv'"
.mode box
SELECT product, sum(units * price) AS revenue
FROM read_csv_auto('/inputs/sales.csv')
GROUP BY product
ORDER BY revenue DESC;
