INSERT INTO shop_region (code, name) VALUES ('EU', 'Europe');
INSERT INTO shop_region (code, name) VALUES ('NA', 'North America');
INSERT INTO shop_region (code, name) VALUES ('AS', 'Asia');
